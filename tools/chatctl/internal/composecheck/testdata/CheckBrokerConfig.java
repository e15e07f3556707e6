// Loads a broker's server.properties with Kafka's own KafkaConfig and builds the server
// SSL engine factory of each of its SSL listeners, as a broker does at start; prints
// the keys Kafka does not define (plugins' settings), one per line after "unknown:".
// Run by TestBrokerConfigLoadsInKafka (java CheckBrokerConfig.java server.properties,
// with the local stack's Kafka jars on the classpath).
import java.io.FileReader;
import java.util.HashSet;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;

public class CheckBrokerConfig {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        try (FileReader r = new FileReader(args[0])) {
            p.load(r);
        }
        kafka.server.KafkaConfig c = kafka.server.KafkaConfig.fromProps(p);
        Set<String> known = new HashSet<>(scala.jdk.javaapi.CollectionConverters.asJava(kafka.server.KafkaConfig.configNames()));
        for (String k : new TreeSet<>(p.stringPropertyNames())) {
            if (!known.contains(k) && !k.startsWith("listener.name.")) {
                System.out.println("unknown: " + k);
            }
        }
        for (org.apache.kafka.common.Endpoint e : scala.jdk.javaapi.CollectionConverters.asJava(c.listeners())
                .stream().map(x -> x.toJava()).toList()) {
            String proto = e.securityProtocol().name;
            if (!proto.endsWith("SSL")) {
                System.out.println("listener: " + e.listenerName().get() + " " + proto);
                continue;
            }
            var f = new org.apache.kafka.common.security.ssl.SslFactory(org.apache.kafka.common.network.ConnectionMode.SERVER);
            f.configure(c.valuesWithPrefixOverride("listener.name." + e.listenerName().get().toLowerCase() + "."));
            System.out.println("listener: " + e.listenerName().get() + " " + proto + " ssl-ok");
        }
        System.out.println("ok");
    }
}
