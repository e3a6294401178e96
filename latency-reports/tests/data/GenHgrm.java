// Generates the java_*.hgrm files next to it with HdrHistogram's reference (Java) implementation,
// which tests/hgrm_format.rs compares format_hgrm's output with, byte for byte.
//
//   apt-get install libhdrhistogram-java   # HdrHistogram 2.1.11 (Debian), plus a JDK
//   javac -cp /usr/share/java/hdrhistogram.jar GenHgrm.java
//   java -cp /usr/share/java/hdrhistogram.jar:. GenHgrm
//
// It prints the three distributions separated by "=== empty" and "=== single" lines.
import org.HdrHistogram.*;

public class GenHgrm {
  public static void main(String[] a) throws Exception {
    Histogram h = new Histogram(1, 60_000_000_000L, 3);
    for (int i = 1; i <= 200; i++) h.recordValue(i * 250L);
    h.recordValueWithCount(1_000_000L, 3);
    h.recordValue(7);
    h.outputPercentileDistribution(System.out, 5, 1000.0);
    System.out.println("=== empty");
    new Histogram(1, 60_000_000_000L, 3).outputPercentileDistribution(System.out, 5, 1000.0);
    System.out.println("=== single");
    Histogram s = new Histogram(1, 60_000_000_000L, 3);
    s.recordValue(123456);
    s.outputPercentileDistribution(System.out, 5, 1000.0);
  }
}
